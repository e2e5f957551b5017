"""Kernels in containers of their own, on a Docker-API engine, through gateway_provisioners'
`docker-provisioner`: the launcher its kernelspecs run (`launch`), and the command that
writes such a kernelspec (`kernelspec`). Run as programs, apart from the service: nothing
here is imported by it."""
