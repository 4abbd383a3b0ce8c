from setuptools import find_packages, setup

package_name = "mtopt_bridge"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="MT-Opt maintainers",
    maintainer_email="mtopt-maintainers@example.com",
    description=(
        "ROS glue shared by the MT-Opt nodes: numpy <-> sensor_msgs/Image, node main(), "
        "a MultiThreadedExecutor without rclpy's busy loop."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
