"""MT-Opt learner: episode bags -> relabelled replay buffers -> Q-network weights."""
