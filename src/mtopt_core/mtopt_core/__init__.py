"""MT-Opt learning core (pure Python + torch, never imports rclpy)."""
