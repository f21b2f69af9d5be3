"""Foreign annotation formats: a 100,000-region QuPath GeoJSON and a 50 MB ImageScope XML.

* GeoJSON read (``read_annotation``: parse, checks, model, self-intersection flags) vs
  ``json.load`` plus a shapely polygon per feature (``shapely.geometry.shape``), the usual way
  a script reads the same file. Ratio = baseline time / ours.
* The same file opened as napari layers (reader + Labels + Shapes in a ``ViewerModel``), as
  napari does when the file is dropped. Target: under 3 s.
* A 50 MB ImageScope XML (two layers, free-hand polygons and ellipses, float vertices) read
  vs ``xml.etree.ElementTree.parse`` plus numpy vertex arrays per region.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings

import numpy as np

from benchmarks._harness import DATA, timed

N_REGIONS = 100_000
N_VERTICES = 16
TARGET_LAYERS_S = 3.0
XML_MB = 50


def make_geojson(n_regions: int, n_vertices: int = N_VERTICES, seed: int = 0):
    """A QuPath 0.4-style export: annotations with classification name + colour, float (x, y)
    vertices on small blobs over an 80,000 x 40,000 slide, closed rings."""
    path = DATA / f"qupath_{n_regions}x{n_vertices}.geojson"
    if path.is_file():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    classes = [
        ("Tumor", [200, 0, 0]),
        ("Stroma", [150, 200, 150]),
        ("Immune cells", [160, 90, 160]),
    ]
    parts = []
    for i in range(n_regions):
        radius = rng.uniform(20, 120) * (1 + 0.15 * np.sin(3 * t + rng.uniform(0, 6)))
        cx, cy = rng.uniform([500, 500], [79_500, 39_500])
        ring = np.round(np.column_stack([cx + radius * np.cos(t), cy + radius * np.sin(t)]), 2)
        ring = np.vstack([ring, ring[:1]]).tolist()
        name, color = classes[i % len(classes)]
        parts.append(
            json.dumps(
                {
                    "type": "Feature",
                    "id": str(uuid.UUID(int=int(rng.integers(0, 2**63)), version=4)),
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {
                        "objectType": "annotation",
                        "classification": {"name": name, "color": color},
                    },
                }
            )
        )
    text = '{"type": "FeatureCollection", "features": [\n' + ",\n".join(parts) + "\n]}\n"
    path.write_text(text)
    return path


def make_imagescope(target_mb: float, seed: int = 0):
    """An ImageScope file of about ``target_mb`` MB: two layers of free-hand polygons with
    float vertices (and an ellipse every 50 regions), CRLF line ends, as ImageScope writes."""
    path = DATA / f"imagescope_{int(target_mb)}mb.xml"
    if path.is_file():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_vertices = 500
    per_region = n_vertices * 52 + 400
    n_regions = int(target_mb * 1e6 / per_region)
    t = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    out = ['<Annotations MicronsPerPixel="0.252100">']
    for layer, (name, color) in enumerate((("Tumor", 65280), ("Stroma", 255)), start=1):
        out.append(
            f'<Annotation Id="{layer}" Name="{name}" ReadOnly="0" Type="4" LineColor="{color}" '
            'Visible="1" Selected="0" MarkupImagePath="" MacroName="">'
        )
        out += ['<Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>']
        out.append("<Regions>")
        for k in range(n_regions // 2):
            rid = (layer - 1) * n_regions + k + 1
            cx, cy = rng.uniform([2000, 2000], [78_000, 38_000])
            if k % 50 == 49:
                out.append(
                    f'<Region Id="{rid}" Type="2" Zoom="0.042188" Text="" NegativeROA="0" '
                    'Length="0" Area="0"><Attributes/><Vertices>'
                    f'<Vertex X="{cx:.6f}" Y="{cy:.6f}" Z="0"/>'
                    f'<Vertex X="{cx + 300:.6f}" Y="{cy + 200:.6f}" Z="0"/>'
                    "</Vertices></Region>"
                )
                continue
            radius = rng.uniform(200, 1500) * (1 + 0.2 * np.sin(3 * t + rng.uniform(0, 6)))
            xs, ys = cx + radius * np.cos(t), cy + radius * np.sin(t)
            out.append(
                f'<Region Id="{rid}" Type="0" Zoom="0.042188" Text="" NegativeROA="0" '
                'Length="0" Area="0"><Attributes/><Vertices>'
            )
            out += [
                f'<Vertex X="{x:.6f}" Y="{y:.6f}" Z="0"/>' for x, y in zip(xs, ys, strict=True)
            ]
            out.append("</Vertices></Region>")
        out += ["</Regions>", "<Plots/>", "</Annotation>"]
    out.append("</Annotations>")
    path.write_text("\r\n".join(out) + "\r\n")
    return path


def _json_shapely(path):
    import shapely.geometry

    with open(path) as fh:
        doc = json.load(fh)
    return [shapely.geometry.shape(f["geometry"]) for f in doc["features"]]


def _etree_numpy(path):
    import xml.etree.ElementTree as ET

    regions = []
    for region in ET.parse(path).getroot().iter("Region"):
        verts = region.find("Vertices")
        xy = np.array([(float(v.get("X")), float(v.get("Y"))) for v in verts], dtype=np.float64)
        regions.append(xy)
    return regions


def _open_layers(path):
    from napari.components import ViewerModel

    from napari_crystal.plugin._reader import get_annotation_reader

    viewer = ViewerModel()
    for data, kwargs, kind in get_annotation_reader(str(path))(str(path)):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def run(record, quick: bool = False) -> None:
    from napari_crystal.io import read_annotation
    from napari_crystal.plugin._reader import read_annotation_layers

    n = 10_000 if quick else N_REGIONS
    path = make_geojson(n)
    size_mb = path.stat().st_size / 1e6
    ours_s, ann = timed(_quiet, read_annotation, path, repeat=2)
    base_s, shapes = timed(_json_shapely, path, repeat=2)
    assert len(ann.regions) == len(shapes) == n
    ratio = base_s / ours_s
    record(
        f"read QuPath GeoJSON ({n:,} regions x {N_VERTICES} vertices, {size_mb:.0f} MB)",
        f"read_annotation {ours_s:.2f} s",
        f"json.load + shapely.geometry.shape {base_s:.2f} s",
        ratio,
        ">= 1x (no slower than json + shapely)",
        ratio >= 1,
        ours_s=ours_s,
        baseline_s=base_s,
    )

    del ann, shapes  # not kept alive (and in the way of allocations) while napari opens
    _quiet(_open_layers, make_geojson(3))  # first-layer costs are paid once per session
    cpu = time.process_time()
    open_s, viewer = timed(_quiet, _open_layers, path, repeat=1)
    open_cpu_s = time.process_time() - cpu
    load = os.getloadavg()[0]  # a busy machine stretches wall time, not CPU time
    reader_s, _ = timed(_quiet, read_annotation_layers, str(path), repeat=1)
    top = viewer.layers[-1]  # Shapes, or one point per region above the reader's limit
    what = (
        f"{top.nshapes} '{top.shape_type[0]}' shapes"
        if hasattr(top, "nshapes")
        else f"{len(top.data)} points (one per region)"
    )
    print(
        f"   {what}; of the {open_s:.2f} s the reader (file to layer data) took "
        f"{reader_s:.2f} s, napari the rest",
        flush=True,
    )
    record(
        f"open QuPath GeoJSON as napari layers ({n:,} regions)",
        f"reader + Labels + {type(top).__name__} {open_s:.2f} s (CPU {open_cpu_s:.2f} s, "
        f"load {load:.1f})",
        f"reading alone {ours_s:.2f} s",
        None,
        f"< {TARGET_LAYERS_S:.0f} s",
        open_s < TARGET_LAYERS_S,
        open_s=open_s,
        open_cpu_s=open_cpu_s,
        load=load,
        reader_s=reader_s,
        layer=type(top).__name__,
    )

    mb = 5 if quick else XML_MB
    xml = make_imagescope(mb)
    xml_mb = xml.stat().st_size / 1e6
    ours_s, ann = timed(_quiet, read_annotation, xml, repeat=2)
    base_s, regions = timed(_etree_numpy, xml, repeat=2)
    assert len(ann.regions) == len(regions)
    n_vertices = sum(len(r) for r in regions)
    ratio = base_s / ours_s
    record(
        f"read ImageScope XML ({xml_mb:.0f} MB, {len(regions):,} regions, {n_vertices:,} vertices)",
        f"read_annotation {ours_s:.2f} s",
        f"ElementTree.parse + numpy vertices {base_s:.2f} s",
        ratio,
        ">= 1x (no slower than ElementTree)",
        ratio >= 1,
        ours_s=ours_s,
        baseline_s=base_s,
    )
