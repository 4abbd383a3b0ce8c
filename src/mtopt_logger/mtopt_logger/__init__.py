"""mtopt_logger: episode logger node (one rosbag2 MCAP bag per episode)."""
