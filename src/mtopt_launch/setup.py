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
        "mtopt-launch: runs ROS 2 YAML launch files without the launch package; "
        "demo nodes for smoke tests."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mtopt-launch = mtopt_launch.cli:main",
            "mtopt-demo-cell = mtopt_launch.demo_cell_node:main",
            "mtopt-demo-collector = mtopt_launch.demo_collector_node:main",
        ]
    },
)
