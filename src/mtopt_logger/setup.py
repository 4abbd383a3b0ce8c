from setuptools import find_packages, setup

package_name = "mtopt_logger"

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
    description="Episode logger node: one rosbag2 (MCAP, zstd) bag per episode.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "logger_node = mtopt_logger.logger_node:main",
            "mtopt-bag-play = mtopt_logger.bag_play_node:main",
        ]
    },
)
