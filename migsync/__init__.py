"""migsync: keep Slurm's gres.conf in step with a node's real NVIDIA MIG layout."""
__version__ = "0.1.0"


def site_packages() -> None:
    """Make third-party packages (pyslurm, pynvml) importable. The Prolog hook starts Python
    with -S: site's start-up costs ~1.5 ms per job, and only acting with pyslurm needs it, so
    it runs here, before such an import, and not at every start."""
    import sys

    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()
