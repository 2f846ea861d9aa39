"""The pure core: no devices, sockets, threads of its own or model runtime."""
