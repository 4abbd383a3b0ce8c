"""ROS glue shared by the MT-Opt nodes: numpy <-> sensor_msgs/Image (cv_bridge stand-in)."""
