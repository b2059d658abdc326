"""fnlb.fnsim"""
