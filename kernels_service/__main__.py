"""`python -m kernels_service` starts the service."""

from kernels_service.launch import main

if __name__ == "__main__":
    main()
