from setuptools import find_packages, setup

package_name = "mtopt_policy"

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
        "mtopt-policy: the cell's policy node (CEM, epsilon-greedy, scripted, hot weight "
        "reload) and collector node (task sequencing, grading, logging, bin resets)."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = mtopt_policy.policy_node:main",
            "collector_node = mtopt_policy.collector_node:main",
            "mtopt-wait-collectors = mtopt_policy.wait_collectors_node:main",
            "mtopt-policy-bench = mtopt_policy.bench:main",
        ]
    },
)
