"""A click progress bar around a long call whose total is known only once it has started (eval, demo)."""

import click

def run_with_bar(call, label):
    """Return call(log=, progress=, start=): `start(total)` opens the bar, `progress(n)` advances it.

    Example:
        >>> report = run_with_bar(functools.partial(run_eval, c), 'Evaluating (methods x images)')
    """
    bar = {}
    def start(total):
        bar['bar'] = click.progressbar(length=total, label=label)
        bar['bar'].__enter__()
    try:
        return call(log=click.echo, progress=lambda n: bar['bar'].update(n), start=start)
    finally:
        if 'bar' in bar:
            bar['bar'].__exit__(None, None, None)
