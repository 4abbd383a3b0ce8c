"""MT-Opt learner: episode bags -> relabelled replay buffers -> Q-network weights (see
README.md: the online Learner and learner_node, the offline CLI mtopt-learn, its Ray backend)."""
