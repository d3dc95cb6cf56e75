"""One module per dataset kind, each with its `load_*(*, arg, seed, val_fraction, test_fraction)
-> Splits`; `jaxdl.data.registry` maps the kind names to them."""
