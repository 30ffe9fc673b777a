from cloudmig.cli.main import app

app(prog_name="cloudmig")
