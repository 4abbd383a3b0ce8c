from setuptools import find_packages, setup

package_name = "mtopt_demo"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml", "README.md"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="MT-Opt maintainers",
    maintainer_email="mtopt-maintainers@example.com",
    description=(
        "The whole-system MT-Opt demo on a simulated cell: collect -> learn -> act -> report."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mtopt-demo = mtopt_demo.cli:main",
        ]
    },
)
