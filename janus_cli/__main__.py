from janus_cli.main import app

app(prog_name="janus")
