from bench.model_control.study import main

main()
