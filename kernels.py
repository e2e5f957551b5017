#!/usr/bin/env python3
"""Launcher: `python kernels.py --base-path=jupyter` starts the kernels service."""

from kernels_service.launch import main

if __name__ == "__main__":
    main()
