"""Offline analysis of captures (files, directories, tarballs) from any host: `connwatch analyze`.

inputs.py finds the files and opens them as text; detect.py names each file's format;
build.py streams the parsers into Snapshots (one per capture); report.py measures, judges,
explains and says which checks the capture could not support.
"""
