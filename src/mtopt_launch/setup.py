from setuptools import find_packages, setup

package_name = "mtopt_launch"

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
        "mtopt-launch: runs ROS 2 YAML launch files (`mtopt-launch PKG FILE`) on machines "
        "without the launch / launch_ros packages."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mtopt-launch = mtopt_launch.cli:main",
        ]
    },
)
