"""ROS glue shared by the MT-Opt nodes: numpy/sensor_msgs Image conversion (cv_bridge stand-in) and node helpers."""
