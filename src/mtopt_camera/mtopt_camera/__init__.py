"""mtopt_camera: camera node (OpenCV device or video file -> sensor_msgs/Image)."""
