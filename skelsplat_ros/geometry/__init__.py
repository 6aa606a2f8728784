"""Geometry: cameras (pinhole + OpenCV distortion), calibration files and rigs, triangulation. numpy only."""
