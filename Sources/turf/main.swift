print("turf")
