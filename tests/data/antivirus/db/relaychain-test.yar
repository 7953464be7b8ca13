rule RelayChain_Test_Yara
{
    strings:
        $marker = "relaychain yara marker 51c4"
    condition:
        $marker
}
