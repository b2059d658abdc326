"""fnlb.gossip"""
