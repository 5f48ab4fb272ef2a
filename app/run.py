"""Development server on port 5000, as the operations manual starts it: `python run.py`.

Production runs gunicorn (see gunicorn.conf.py); this is for a developer's machine.
"""

import os

os.environ.setdefault("TASK_MANAGER_ENV", "development")

from flask_migrate import upgrade

from task_manager import create_app
from task_manager.devserver import debug_from
from task_manager.extensions import MIGRATIONS_DIR

app = create_app()

if __name__ == "__main__":
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)  # the manual's "python run.py" also initialises the database
    port = int(os.environ.get("FLASK_RUN_PORT", "5000"))
    host = os.environ.get("FLASK_RUN_HOST", "127.0.0.1")
    # The manual's 13.2: FLASK_DEBUG=1 turns on the debugger and the reloader, here only.
    app.run(host=host, port=port, debug=debug_from(os.environ, host))
