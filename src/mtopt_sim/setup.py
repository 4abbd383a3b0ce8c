from setuptools import find_packages, setup

package_name = "mtopt_sim"

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
    description="mtopt-sim: simulated MT-Opt robot cell in MuJoCo, gymnasium env, scripted "
    "policies with privileged aims, sim_cell_node and the SD example generator.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_cell_node = mtopt_sim.sim_cell_node:main",
            "mtopt-sim-bench = mtopt_sim.bench:main",
            "mtopt-sd-examples = mtopt_sim.sd_examples:main",
            "mtopt-sim-collect = mtopt_sim.bulk_collect:main",
        ]
    },
)
