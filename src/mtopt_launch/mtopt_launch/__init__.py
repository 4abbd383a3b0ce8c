"""mtopt-launch: runs ROS 2 YAML launch files without the `launch` package; demo graph."""
