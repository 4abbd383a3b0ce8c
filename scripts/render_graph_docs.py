#!/usr/bin/env python3
"""Regenerate the README's architecture pictures in docs/graph/.

* `cell_graph.png` (+ `cell_graph.json`): the ROS graph of one simulated cell, read from a running
  `sim_cell.launch.yaml` through rclpy's graph API (nodes, topics, services and actions of
  namespace /cell0; rclpy's own parameter services and /rosout are left out).
* `data_flow.png`: how data moves through MT-Opt (camera -> logger -> bag -> learner -> weights
  -> policy), drawn from the fixed description below.

Needs Graphviz's `dot` (Debian: apt-get install graphviz). Usage, from the repository root:

    .venv/bin/python scripts/render_graph_docs.py [--out docs/graph]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN_SUFFIXES = (
    "/describe_parameters",
    "/get_parameter_types",
    "/get_parameters",
    "/list_parameters",
    "/set_parameters",
    "/set_parameters_atomically",
    "/get_type_description",
)
HIDDEN_NAMES = {"/rosout", "/parameter_events"}
NAMESPACE = "/cell0"
#: Nodes that exist only to end a launch or watch it; not part of a cell.
SKIPPED_NODES = {"wait_collectors", "graph_probe"}


def visible(name: str) -> bool:
    return (
        name not in HIDDEN_NAMES
        and not name.endswith(HIDDEN_SUFFIXES)
        and "/_action/" not in name
        and not name.endswith("/_action")
    )


def introspect(launch_cmd: list[str], settle_s: float, timeout_s: float) -> dict:
    """Start the launch, read the cell's graph once it has stopped growing, stop the launch."""
    import rclpy
    from rclpy.action import graph as action_graph

    launch = subprocess.Popen(launch_cmd, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("graph_probe")
    try:
        deadline = time.monotonic() + timeout_s
        last, stable_since = None, time.monotonic()
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.5)
            graph = _read_graph(node, action_graph)
            key = json.dumps(graph, sort_keys=True)
            if key != last:
                last, stable_since = key, time.monotonic()
            elif graph["nodes"] and time.monotonic() - stable_since > settle_s:
                return graph
            if launch.poll() is not None:
                raise RuntimeError(f"the launch exited early with code {launch.returncode}")
        raise RuntimeError(f"the graph did not settle within {timeout_s:.0f} s")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGINT)
            try:
                launch.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(launch.pid, signal.SIGKILL)


def _read_graph(node, action_graph) -> dict:
    nodes = {}
    for name, ns in node.get_node_names_and_namespaces():
        if ns != NAMESPACE or name in SKIPPED_NODES:
            continue

        def names(pairs):
            return sorted(n for n, _ in pairs if visible(n))

        nodes[name] = {
            "publishes": names(node.get_publisher_names_and_types_by_node(name, ns)),
            "subscribes": names(node.get_subscriber_names_and_types_by_node(name, ns)),
            "serves": names(node.get_service_names_and_types_by_node(name, ns)),
            "calls": names(node.get_client_names_and_types_by_node(name, ns)),
            "action_servers": names(
                action_graph.get_action_server_names_and_types_by_node(node, name, ns)
            ),
            "action_clients": names(
                action_graph.get_action_client_names_and_types_by_node(node, name, ns)
            ),
        }
    return {"namespace": NAMESPACE, "nodes": nodes}


def cell_graph_dot(graph: dict) -> str:
    """Nodes as boxes, topics as ellipses, services as diamonds, actions as hexagons."""
    ns = graph["namespace"] + "/"
    lines = [
        "digraph cell {",
        '  rankdir=LR; bgcolor="white"; fontname="Helvetica"; nodesep=0.25; ranksep=0.9;',
        f'  label="ROS graph of one simulated cell ({graph["namespace"]})"; labelloc=t;',
        '  node [fontname="Helvetica", fontsize=11]; edge [color="#555555"];',
    ]
    endpoints: dict[str, str] = {}

    def endpoint(name: str, shape: str, color: str) -> str:
        key = f"{shape}:{name}"
        if key not in endpoints:
            endpoints[key] = f"e{len(endpoints)}"
            label = name[len(ns) :] if name.startswith(ns) else name
            lines.append(
                f'  {endpoints[key]} [label="{label}", shape={shape}, style=filled, '
                f'fillcolor="{color}", fontsize=9];'
            )
        return endpoints[key]

    for name, io in sorted(graph["nodes"].items()):
        lines.append(
            f'  "{name}" [shape=box, style="rounded,filled", fillcolor="#cfe2ff", '
            "fontsize=12, penwidth=1.5];"
        )
        for topic in io["publishes"]:
            lines.append(f'  "{name}" -> {endpoint(topic, "ellipse", "#f1f3f5")};')
        for topic in io["subscribes"]:
            lines.append(f'  {endpoint(topic, "ellipse", "#f1f3f5")} -> "{name}";')
        for srv in io["serves"]:
            lines.append(f'  {endpoint(srv, "diamond", "#fff3bf")} -> "{name}" [style=dashed];')
        for srv in io["calls"]:
            lines.append(f'  "{name}" -> {endpoint(srv, "diamond", "#fff3bf")} [style=dashed];')
        for act in io["action_servers"]:
            lines.append(f'  {endpoint(act, "hexagon", "#d3f9d8")} -> "{name}" [style=bold];')
        for act in io["action_clients"]:
            lines.append(f'  "{name}" -> {endpoint(act, "hexagon", "#d3f9d8")} [style=bold];')
    lines.append(
        '  subgraph cluster_legend { label="legend"; fontsize=10; color="#aaaaaa"; '
        'l1 [label="node", shape=box, style="rounded,filled", fillcolor="#cfe2ff"]; '
        'l2 [label="topic", shape=ellipse, style=filled, fillcolor="#f1f3f5"]; '
        'l3 [label="service", shape=diamond, style=filled, fillcolor="#fff3bf"]; '
        'l4 [label="action", shape=hexagon, style=filled, fillcolor="#d3f9d8"]; }'
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


DATA_FLOW_DOT = """digraph dataflow {
  rankdir=LR; fontname="Helvetica"; nodesep=0.35; ranksep=0.55;
  label="MT-Opt data flow: every cell logs, one learner trains, every cell loads"; labelloc=t;
  node [fontname="Helvetica", fontsize=11, shape=box, style="rounded,filled", fillcolor="#cfe2ff"];
  edge [fontname="Helvetica", fontsize=9, color="#555555"];
  subgraph cluster_cell { label="robot cell x N (real or simulated)"; color="#888888";
    cameras [label="3 cameras"]; arm [label="iiwa arm\\n+ gripper"]; bin [label="reset bin"];
    policy [label="policy\\n(CEM over Q)"];
    collector [label="collector\\n(task choice,\\npick -> place)"];
    sd [label="success\\ndetector"]; logger [label="logger"];
  }
  bags [label="episode bags\\n(rosbag2 MCAP,\\none per episode)", shape=folder,
        fillcolor="#fff3bf"];
  subgraph cluster_learner { label="learner (one machine or Ray)"; color="#888888";
    replay [label="LogReplay\\n+ impersonation"];
    buffers [label="per-task\\nbuffers\\n(re-balanced)"];
    trainer [label="multi-task\\nQT-Opt"];
  }
  ckpt [label="checkpoint\\n+ sha256", shape=note, fillcolor="#d3f9d8"];
  cameras -> policy [label="images"]; cameras -> logger [label="images"];
  policy -> arm [label="move_ee,\\ngripper"]; policy -> logger [label="policy/step"];
  collector -> policy [label="run_episode(task)"]; collector -> sd [label="grade"];
  collector -> bin [label="reset"]; collector -> logger [label="start / finish\\n(EpisodeInfo)"];
  logger -> bags; bags -> replay; replay -> buffers -> trainer -> ckpt;
  ckpt -> policy [label="WeightsUpdate\\n(policy/weights)", color="#2b8a3e", fontcolor="#2b8a3e"];
}
"""


def render(dot_source: str, png: Path) -> None:
    dot = shutil.which("dot")
    if dot is None:
        raise SystemExit("Graphviz 'dot' not found (Debian/Ubuntu: apt-get install graphviz)")
    subprocess.run(
        [dot, "-Tpng", "-Gdpi=110", "-o", str(png)], input=dot_source.encode(), check=True
    )
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/graph"))
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the graph"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    launcher = Path(sys.executable).parent / "mtopt-launch"
    with tempfile.TemporaryDirectory() as episodes:
        cmd = [str(launcher), "mtopt_bringup", "sim_cell.launch.yaml", "episodes:=0",
               f"episode_dir:={episodes}"]  # fmt: skip
        graph = introspect(cmd, settle_s=8.0, timeout_s=args.timeout)
    (args.out / "cell_graph.json").write_text(json.dumps(graph, indent=1, sort_keys=True) + "\n")
    render(cell_graph_dot(graph), args.out / "cell_graph.png")
    render(DATA_FLOW_DOT, args.out / "data_flow.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
