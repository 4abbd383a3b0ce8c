from setuptools import find_packages, setup

package_name = "mtopt_sd"

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
    description="MT-Opt multi-task success detector: SD node, training CLI, example clip format.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sd_node = mtopt_sd.sd_node:main",
            "mtopt-sd-train = mtopt_sd.train_cli:main",
        ]
    },
)
