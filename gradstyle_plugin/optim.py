"""Lookahead optimizer: Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back"
(NeurIPS 2019), used with Adam by GradStyle (section 4.1, "Adam optimizer with LookAhead").

torch.optim has no Lookahead, so it is written here. An inner ("fast") optimizer, Adam by
default, takes every step; after every k inner steps the slow weights phi move a fraction alpha
towards the fast weights theta, and the fast weights restart from them:

    phi <- phi + alpha * (theta - phi);     theta <- phi.

The slow weights start as the parameters' values at the first step.

With `centralize`, the gradient of every parameter of 2 or more dimensions is first centred
(Yong et al., "Gradient Centralization", ECCV 2020: g <- g - mean of g over all dimensions but the
first), as the Ranger optimiser used by e4e does (Ranger = RAdam + Lookahead + centralisation).
"""

import inspect

import torch

from stylegan2_ada_pytorch import dnnlib

#----------------------------------------------------------------------------

class Lookahead(torch.optim.Optimizer):
    """Lookahead around an inner optimizer (Adam by default); a real `torch.optim.Optimizer`.

    The inner optimizer shares this optimizer's `param_groups` (the same dicts), so changing
    `group['lr']` (LR schedules, the toolkit's lazy-regularisation betas) reaches it. Keyword
    arguments the inner class does not take (e.g. `betas` for SGD) are not passed on.
    `state_dict()` holds the slow weights, the step counters and the inner optimizer's state,
    so `load_state_dict()` resumes exactly.

    Example:
        >>> opt = dnnlib.util.construct_class_by_name(params=G.parameters(),
        ...     class_name='gradstyle_plugin.optim.Lookahead', lr=1e-4, betas=(0.9, 0.999), k=5, alpha=0.5)
        >>> loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    """

    def __init__(self,
        params,                             # Parameters or parameter groups, as for any torch optimizer.
        lr              = 1e-3,             # Learning rate of the inner optimizer.
        betas           = (0.9, 0.999),     # Adam betas of the inner optimizer.
        eps             = 1e-8,             # Adam epsilon of the inner optimizer.
        weight_decay    = 0,                # Weight decay of the inner optimizer.
        k               = 5,                # Inner steps between two slow-weight updates.
        alpha           = 0.5,              # Slow-weight step size in [0, 1].
        base            = 'torch.optim.Adam', # Dotted name of the inner optimizer class.
        centralize      = False,            # Centre >= 2-D gradients before each inner step (Ranger's gradient centralisation).
    ):
        if int(k) != k or k < 1:
            raise ValueError(f'Lookahead: k must be a positive integer, got {k!r}')
        if not 0 <= alpha <= 1:
            raise ValueError(f'Lookahead: alpha must be in [0, 1], got {alpha!r}')
        base_class = dnnlib.util.get_obj_by_name(base) if isinstance(base, str) else base
        if not (isinstance(base_class, type) and issubclass(base_class, torch.optim.Optimizer)):
            raise ValueError(f'Lookahead: base must name a torch.optim.Optimizer class, got {base!r}')
        self.base = base if isinstance(base, str) else f'{base_class.__module__}.{base_class.__qualname__}'
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, k=int(k), alpha=float(alpha), lookahead_step=0,
            centralize=bool(centralize))
        super().__init__(params, defaults)
        accepted = inspect.signature(base_class.__init__).parameters
        base_kwargs = {key: value for key, value in defaults.items() if key in accepted and key != 'params'}
        self.inner = base_class(self.param_groups, **base_kwargs)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if getattr(self, 'inner', None) is not None:
            self.inner.add_param_group(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure=None):
        """One inner step; every k-th step of a group also updates its slow weights."""
        for group in self.param_groups:
            for p in group['params']:
                if 'slow' not in self.state[p]:
                    self.state[p]['slow'] = p.detach().clone()
                if group.get('centralize') and p.grad is not None and p.grad.dim() > 1:
                    p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.grad.dim())), keepdim=True))
        loss = self.inner.step(closure)
        for group in self.param_groups:
            group['lookahead_step'] += 1
            if group['lookahead_step'] % group['k'] != 0:
                continue
            for p in group['params']:
                slow = self.state[p]['slow']
                slow.add_(p.detach() - slow, alpha=group['alpha'])
                p.copy_(slow)
        return loss

    def state_dict(self):
        state = super().state_dict()
        state['inner_state'] = self.inner.state_dict()['state']
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        if 'inner_state' not in state_dict:
            raise ValueError('Lookahead.load_state_dict: no "inner_state" entry (not a Lookahead state_dict)')
        inner_state = state_dict.pop('inner_state')
        self.inner.load_state_dict({'state': inner_state, 'param_groups': state_dict['param_groups']})
        super().load_state_dict(state_dict)
        self.inner.param_groups = self.param_groups # Re-share the group dicts (loading made new ones).

#----------------------------------------------------------------------------
