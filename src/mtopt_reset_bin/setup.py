from setuptools import find_packages, setup

package_name = "mtopt_reset_bin"

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
    description="Resettable-bin node for MT-Opt: ResetBin action on a sim or serial hinge motor.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "reset_bin_node = mtopt_reset_bin.reset_bin_node:main",
            "fake_bin_motor_controller = mtopt_reset_bin.fake_controller:main",
        ]
    },
)
