from fairseq_specdec.benchmark.cli import cli_main

cli_main()
