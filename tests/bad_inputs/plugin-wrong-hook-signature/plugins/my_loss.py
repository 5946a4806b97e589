import runner


@runner.hookimpl
def register_losses(reg, options):
    pass
