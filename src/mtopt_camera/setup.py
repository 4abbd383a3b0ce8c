from setuptools import find_packages, setup

package_name = "mtopt_camera"

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
    description="Camera node: OpenCV device or video file -> sensor_msgs/Image + CameraInfo.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["camera_node = mtopt_camera.camera_node:main"]},
)
