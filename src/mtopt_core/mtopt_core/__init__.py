"""MT-Opt learning core (pure Python + torch, no ROS): tasks, Q-network, CEM, Bellman targets, impersonation, replay, checkpoints."""
