"""Multi-host overlay networks: the cluster store (etcd), the registry kept there, and the VXLAN data plane."""
