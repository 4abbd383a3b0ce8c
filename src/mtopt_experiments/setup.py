from setuptools import find_packages, setup

package_name = "mtopt_experiments"

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
        "MT-Opt lab experiments in the simulator: the paired evaluator of a Q-network"
        " (mtopt-eval), the gym probe and the scripted policies' measurement."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mtopt-sim-evaluate-scripted = mtopt_experiments.evaluate_scripted:main",
            "mtopt-eval = mtopt_experiments.evaluate:main",
            "mtopt-train-sim = mtopt_experiments.train_sim:main",
            "mtopt-reliability = mtopt_experiments.reliability:main",
        ]
    },
)
