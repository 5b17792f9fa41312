pipeline "params" {
  params = { learning_rate = 0.1, epochs = 10 },
}

task "train" {
  exec = { "python3", "train.py", "--lr", params.lerning_rate, "--epochs=${params.epochs}", "--seed=${params.seed}" },
}
