"""KUKA iiwa arm controller: Cartesian moves (IK with pinocchio) and gripper commands."""
