"""Entry point of the calculator's tool server: importing it registers every tool."""

from server import mcp
from tools import *  # noqa: F403  (tools register themselves on import)

if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8080)
