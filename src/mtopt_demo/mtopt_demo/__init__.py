"""The whole-system MT-Opt demo on a simulated cell: collect -> learn -> act -> report
(`python -m mtopt_demo`, `mtopt-demo`; see `mtopt_demo.cli`)."""
