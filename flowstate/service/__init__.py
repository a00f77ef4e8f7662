"""The task service: run registered graphs as durable tasks over HTTP.

```python
from flowstate.service import create_app
app = create_app({"drafter": drafter_graph}, db="runs.db", token=os.environ["FLOWSTATE_TOKEN"])
```

or ``flowstate serve myapp.graphs:REGISTRY --db runs.db``. Endpoints, limits and
guarantees: ``flowstate/service/README_SECTION.md``. Needs the ``service`` extra
(fastapi, uvicorn).
"""

from ._app import create_app
from ._cli import serve_command
from ._protocol import ServerLimits, server_config
from ._registry import GraphRegistry, load_registry
from ._ui_cli import ui_command

__all__ = [
    "GraphRegistry",
    "ServerLimits",
    "create_app",
    "load_registry",
    "serve_command",
    "server_config",
    "ui_command",
]
