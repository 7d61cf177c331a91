"""The paper's experiments as runnable recipes, and the reports that compare with it.

Holds the recipes of Tables 1, 2, 4, 5, 6 and 7 (:mod:`~alfa.paper.recipes`) and of Table 3
(:mod:`~alfa.paper.metadataset_recipes`, :mod:`~alfa.paper.metadataset_run`), the controlled
Table 8 recipe (:mod:`~alfa.paper.table8_cells`, :mod:`~alfa.paper.table8_run`,
:mod:`~alfa.paper.table8_report`, with :mod:`~alfa.paper.cells`: a config trained and tested in
a worker process), the map from the paper's tables to configs (:mod:`~alfa.paper.paper_map`),
the Omniglot protocol (:mod:`~alfa.paper.omniglot_cells`, :mod:`~alfa.paper.omniglot_run`,
:mod:`~alfa.paper.omniglot_report`, :mod:`~alfa.paper.omniglot_figure`), the pretrained models'
recipe (:mod:`~alfa.paper.pretrained_recipe`, with :mod:`~alfa.paper.row_choice`: the row that
validation chooses), result tables read back and shipped (:mod:`~alfa.paper.result_table`), their
confidence intervals (:mod:`~alfa.paper.statistics`), the
adaptivity diagnostics (:mod:`~alfa.paper.adaptivity`, :mod:`~alfa.paper.adaptivity_report`)
and where a results file came from (:mod:`~alfa.paper.provenance`).

May import: :mod:`alfa.runs` and everything below it. Never cli.
"""
