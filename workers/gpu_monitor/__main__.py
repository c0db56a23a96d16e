from workers.gpu_monitor.worker import main

if __name__ == "__main__":
    main()
