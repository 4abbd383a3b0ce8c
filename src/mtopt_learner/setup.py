from setuptools import find_packages, setup

package_name = "mtopt_learner"

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
        "MT-Opt learner: LogReplay over episode bags, the online learner node and the"
        " offline CLI mtopt-learn."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mtopt-learn = mtopt_learner.offline:main",
            "learner_node = mtopt_learner.learner_node:main",
        ]
    },
)
