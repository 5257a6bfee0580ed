"""The paper's analysis and loss comparison, reproduced on CPU with this package.

- `figures`: target-logit curves (Fig. 4b) and binary decision margins (Table 1), computed
  with the package's own margin functions.
- `toy_experiment`: the 8-identity, 2-D-feature experiment (Fig. 3) with measured angular
  gaps between neighbouring classes.
- `loss_table`: the loss comparison (Table 2) on the synthetic open-set benchmark under one
  fixed CPU budget per loss.
- `paper_command`: ``keras-arcface paper figures OUT`` and ``keras-arcface paper table``.

Reference: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face
Recognition", arXiv 1801.07698. See ``docs/paper.md``.
"""
