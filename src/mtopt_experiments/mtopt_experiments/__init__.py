"""MT-Opt lab experiments in the simulator, outside the ROS graph (see README.md)."""
