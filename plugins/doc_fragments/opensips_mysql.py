"""Options every sipedge.edge module that talks to the OpenSIPS database shares."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The connection options of plugins/module_utils/opensips_mysql.py (CONNECTION_ARGS)."""

    DOCUMENTATION = r"""
options:
  name:
    description: Database name.
    type: str
    required: true
  login_defaults_file:
    description: MySQL option file whose C([client]) section holds the user and password.
    type: path
    required: true
  login_host:
    description: Server address; empty means the local socket.
    type: str
    default: ""
  login_port:
    description: Server port.
    type: int
    default: 3306
  login_unix_socket:
    description: Socket path; empty means the client library's default.
    type: str
    default: ""
"""
