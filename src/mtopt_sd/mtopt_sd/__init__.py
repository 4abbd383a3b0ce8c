"""MT-Opt multi-task visual success detector: SD node, training CLI, sim example generator."""
